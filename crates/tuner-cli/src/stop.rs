//! Ctrl-C and SIGTERM both ask for a clean stop. Containers and service managers stop
//! processes with SIGTERM, and a container's PID 1 does not even die of it unless it
//! handles it: unhandled, a stopped worker was killed after the grace period with its
//! trial still leased.

use anyhow::{Context, Result};

/// Which request to stop arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopSignal {
    Interrupt,
    Terminate,
}

impl StopSignal {
    pub fn name(self) -> &'static str {
        match self {
            Self::Interrupt => "Ctrl-C",
            Self::Terminate => "SIGTERM",
        }
    }

    /// The shell's convention for a process ended by this signal: 128 + its number.
    pub fn exit_code(self) -> i32 {
        match self {
            Self::Interrupt => 130,
            Self::Terminate => 143,
        }
    }
}

/// Ctrl-C and SIGTERM, caught from the moment this is made until the process ends.
pub struct StopSignals {
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl StopSignals {
    pub fn listen() -> Result<Self> {
        Ok(Self {
            #[cfg(unix)]
            terminate: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .context("cannot listen for SIGTERM")?,
        })
    }

    /// Waits for the next Ctrl-C or SIGTERM.
    pub async fn next(&mut self) -> StopSignal {
        #[cfg(unix)]
        {
            tokio::select! {
                () = interrupt() => StopSignal::Interrupt,
                Some(()) = self.terminate.recv() => StopSignal::Terminate,
            }
        }
        #[cfg(not(unix))]
        {
            interrupt().await;
            StopSignal::Interrupt
        }
    }
}

async fn interrupt() {
    if tokio::signal::ctrl_c().await.is_err() {
        // No Ctrl-C handler could be installed: only SIGTERM can stop us.
        std::future::pending::<()>().await;
    }
}
