//! Live trial events as Server-Sent Events, read from the store's event log so a
//! client can resume where it left off (`Last-Event-ID`), even across restarts.

use std::{collections::VecDeque, convert::Infallible, time::Duration};

use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::stream::{self, Stream};
use tuner_api::{Timestamp, TrialEvent};
use tuner_core::{StudyId, StudyState};

use crate::{AppState, read_models::study_view};

/// How often the log is polled while nothing happens.
const POLL: Duration = Duration::from_millis(250);
/// Events read from the store at a time.
const BATCH: u32 = 500;

struct Cursor {
    state: AppState,
    study: StudyId,
    last: i64,
    buffer: VecDeque<Event>,
    /// The study has ended: read what is left of the log, then send `end`.
    ending: bool,
    /// The study's state when last looked at, from the stream's start: a change (stop,
    /// pause, resume) is sent as a `study` event, since the log holds trial events only.
    study_state: StudyState,
    done: bool,
}

/// The study's events after event `after`; `study_state` is its state when the stream
/// was asked for (read before the answer goes out, so a change made as soon as the
/// stream is open is announced).
pub fn event_stream(
    state: AppState,
    study: StudyId,
    after: i64,
    study_state: StudyState,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let cursor = Cursor {
        state,
        study,
        last: after,
        buffer: VecDeque::new(),
        ending: false,
        study_state,
        done: false,
    };
    let events = stream::unfold(cursor, |mut c| async move {
        loop {
            if let Some(event) = c.buffer.pop_front() {
                return Some((Ok(event), c));
            }
            if c.done {
                return None;
            }
            c.fill().await;
        }
    });
    Sse::new(events).keep_alive(KeepAlive::default())
}

impl Cursor {
    /// Reads the next events into the buffer, or decides the stream is over, or waits.
    async fn fill(&mut self) {
        let store = self.state.store();
        match store.events_since(self.study, self.last, BATCH).await {
            Ok(events) if !events.is_empty() => {
                for e in events {
                    self.last = e.id;
                    let view = TrialEvent {
                        id: e.id,
                        trial_id: e.trial_id,
                        number: e.number,
                        kind: e.kind.clone(),
                        epoch: e.epoch,
                        value: e.value,
                        at: Timestamp::from_unix_ms(e.at),
                    };
                    let event = Event::default()
                        .id(e.id.to_string())
                        .event(e.kind)
                        .json_data(view)
                        .unwrap_or_else(|_| Event::default().comment("unencodable event"));
                    self.buffer.push_back(event);
                }
                return;
            }
            Ok(_) => {}
            Err(e) => {
                tracing::error!(error = %e, "reading trial events");
                self.finish(
                    Event::default()
                        .event("error")
                        .data("the server could not read the event log"),
                );
                return;
            }
        }
        if self.ending {
            let end = match study_view(&self.state, self.study, false).await {
                Ok(study) => Event::default()
                    .event("end")
                    .json_data(study)
                    .unwrap_or_default(),
                Err(_) => Event::default().event("end").data("{}"),
            };
            self.finish(end);
            return;
        }
        // Over once the study hands out nothing more and nothing runs (queued trials of
        // a stopped study will not run).
        match store.get_study(self.study).await {
            Err(_) => self.finish(Event::default().event("end").data("{\"deleted\": true}")),
            Ok(record) => {
                if self.study_state != record.state
                    && let Ok(study) = study_view(&self.state, self.study, false).await
                {
                    self.buffer.push_back(
                        Event::default()
                            .event("study")
                            .json_data(study)
                            .unwrap_or_else(|_| Event::default().comment("unencodable study")),
                    );
                }
                self.study_state = record.state;
                let settled = !record.state.is_active()
                    && store
                        .trial_counts(self.study)
                        .await
                        .is_ok_and(|c| c.running == 0);
                if settled {
                    // One more read: events committed between the read above and now.
                    self.ending = true;
                } else {
                    tokio::time::sleep(POLL).await;
                }
            }
        }
    }

    fn finish(&mut self, event: Event) {
        self.buffer.push_back(event);
        self.done = true;
    }
}
