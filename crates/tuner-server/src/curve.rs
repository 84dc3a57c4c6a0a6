//! The learning-curve pruner's judgement, apart from the store so it can be tested on
//! scripted curves.
//!
//! At epoch `k` of `E`, a trial with value `v` is compared with the completed trials'
//! curves: a least-squares line `final ≈ a + b · value_at_k` across them predicts its
//! final value, and the upper end of that prediction's interval (the line's own error
//! included, so few or similar peers give a wide interval) is one optimistic estimate.
//! The trial's own latest gain, continued with halving steps to epoch `E`, is another:
//! a slow starter still climbing steeply is not judged by where it stands now. The
//! trial is stopped only when neither estimate beats the best completed trial. The
//! point prediction is kept with the pruned trial for the GP (a pruned trial's
//! predicted final value is better information than none).

use tuner_core::Direction;

/// The optimistic estimate is the upper end of a two-sided 95% prediction interval:
/// this quantile of the Student t distribution with `n − 2` degrees of freedom.
const OPTIMISM_QUANTILE: f64 = 0.975;
/// Each future epoch is assumed to gain this fraction of the previous one's gain: an
/// optimistic decay for training curves, which flatten faster in practice.
const GAIN_DECAY: f64 = 0.5;

/// A completed trial's curve: its value at the epoch being judged and at the last.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PeerCurve {
    pub at_epoch: f64,
    pub last: f64,
}

/// The trial being judged.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Judged {
    pub epoch: u32,
    pub value: f64,
    /// Its value one epoch earlier, if it reported one.
    pub previous: Option<f64>,
}

/// What the pruner concluded.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Verdict {
    pub prune: bool,
    /// The predicted value at the last epoch (the line's point prediction).
    pub predicted: f64,
    /// The optimistic estimate compared with the incumbent.
    pub optimistic: f64,
    pub incumbent: f64,
}

/// The verdict on `trial`, or `None` when there is nothing to judge by: an epoch at or
/// past the last, fewer than `min_trials` peers, or no finite values.
pub fn judge(
    direction: Direction,
    last_epoch: u32,
    min_trials: u32,
    peers: &[PeerCurve],
    trial: Judged,
) -> Option<Verdict> {
    if trial.epoch >= last_epoch || !trial.value.is_finite() {
        return None;
    }
    // Work on "larger is better" throughout.
    let sign = match direction {
        Direction::Maximize => 1.0,
        Direction::Minimize => -1.0,
    };
    let peers: Vec<(f64, f64)> = peers
        .iter()
        .filter(|p| p.at_epoch.is_finite() && p.last.is_finite())
        .map(|p| (sign * p.at_epoch, sign * p.last))
        .collect();
    if peers.len() < min_trials.max(3) as usize {
        return None;
    }
    let v = sign * trial.value;
    let incumbent = peers.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);

    let n = peers.len() as f64;
    let mean_x = peers.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_y = peers.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = peers.iter().map(|p| (p.0 - mean_x).powi(2)).sum();
    let sxy: f64 = peers.iter().map(|p| (p.0 - mean_x) * (p.1 - mean_y)).sum();
    // Peers that all stood at the same value say nothing about the slope: assume the
    // trial gains what they gained on average (slope 1).
    let slope = if sxx > 1e-12 * (1.0 + mean_x * mean_x) {
        sxy / sxx
    } else {
        1.0
    };
    let intercept = mean_y - slope * mean_x;
    let predicted = intercept + slope * v;
    let residual_var = peers
        .iter()
        .map(|p| (p.1 - intercept - slope * p.0).powi(2))
        .sum::<f64>()
        / (n - 2.0);
    let leverage = if sxx > 0.0 {
        (v - mean_x).powi(2) / sxx
    } else {
        f64::INFINITY
    };
    let standard_error = (residual_var * (1.0 + 1.0 / n + leverage)).sqrt();
    let from_peers = predicted + student_t_quantile(OPTIMISM_QUANTILE, n - 2.0) * standard_error;

    let remaining = last_epoch - trial.epoch;
    let from_own_gain = trial.previous.map_or(f64::NEG_INFINITY, |previous| {
        let gain = (v - sign * previous).max(0.0);
        let steps: f64 = (1..=remaining).map(|j| GAIN_DECAY.powi(j as i32)).sum();
        v + gain * steps
    });
    let optimistic = from_peers.max(from_own_gain);
    let prune = optimistic.is_finite() && optimistic < incumbent;
    Some(Verdict {
        prune,
        predicted: sign * predicted,
        optimistic: sign * optimistic,
        incumbent: sign * incumbent,
    })
}

/// The `p` quantile of the Student t distribution with `df` degrees of freedom (statrs:
/// exact also at the 1–3 degrees of freedom that 3–5 peers give, where a normal-based
/// expansion understates it up to 1.8×).
fn student_t_quantile(p: f64, df: f64) -> f64 {
    use statrs::distribution::{ContinuousCDF, StudentsT};
    // `judge` asks with at least 1 degree of freedom; anything else is no basis to
    // stop a trial: an infinitely wide interval.
    StudentsT::new(0.0, 1.0, df).map_or(f64::INFINITY, |t| t.inverse_cdf(p))
}

#[cfg(test)]
mod tests {
    #[test]
    fn t_quantiles_are_close_to_the_tables() {
        // t(0.975) for 1, 2, 4, 10 and 30 degrees of freedom.
        for (df, exact) in [
            (1.0, 12.706),
            (2.0, 4.303),
            (4.0, 2.776),
            (10.0, 2.228),
            (30.0, 2.042),
        ] {
            let q = super::student_t_quantile(0.975, df);
            assert!((q - exact).abs() < 0.02 * exact, "df {df}: {q} vs {exact}");
        }
    }

    use super::*;

    /// Completed curves of a typical CNN study over 3 epochs: final ≈ value at epoch 1
    /// plus 0.04, with a little noise.
    fn peers_at_epoch_1() -> Vec<PeerCurve> {
        [
            (0.80, 0.845),
            (0.82, 0.858),
            (0.84, 0.882),
            (0.85, 0.889),
            (0.86, 0.902),
            (0.83, 0.868),
        ]
        .into_iter()
        .map(|(at_epoch, last)| PeerCurve { at_epoch, last })
        .collect()
    }

    #[test]
    fn a_hopeless_trial_is_stopped_at_the_first_epoch() {
        let verdict = judge(
            Direction::Maximize,
            3,
            5,
            &peers_at_epoch_1(),
            Judged {
                epoch: 1,
                value: 0.70,
                previous: None,
            },
        )
        .unwrap();
        assert!(verdict.prune, "{verdict:?}");
        assert!((verdict.incumbent - 0.902).abs() < 1e-12);
        assert!(
            (verdict.predicted - 0.74).abs() < 0.03,
            "the line continues the peers' gain: {verdict:?}"
        );
    }

    #[test]
    fn a_trial_near_the_best_is_not_stopped() {
        let verdict = judge(
            Direction::Maximize,
            3,
            5,
            &peers_at_epoch_1(),
            Judged {
                epoch: 1,
                value: 0.855,
                previous: None,
            },
        )
        .unwrap();
        assert!(!verdict.prune, "{verdict:?}");
    }

    #[test]
    fn a_slow_starter_still_climbing_is_not_stopped() {
        // At epoch 2 of 4 the peers stood at about 0.86 and ended near 0.90; this trial
        // stands at 0.80 but gained 0.12 in its last epoch: 0.80 + 0.12 · (½ + ¼) = 0.89
        // is short of 0.905, but the curve with the same gain at epoch 2 of 5 reaches
        // 0.80 + 0.12 · (½ + ¼ + ⅛) = 0.905, above the incumbent.
        let peers: Vec<PeerCurve> = [
            (0.850, 0.890),
            (0.860, 0.898),
            (0.855, 0.893),
            (0.865, 0.902),
            (0.858, 0.895),
            (0.870, 0.901),
        ]
        .into_iter()
        .map(|(at_epoch, last)| PeerCurve { at_epoch, last })
        .collect();
        let slow = |last_epoch, gain: f64| {
            judge(
                Direction::Maximize,
                last_epoch,
                5,
                &peers,
                Judged {
                    epoch: 2,
                    value: 0.80,
                    previous: Some(0.80 - gain),
                },
            )
            .unwrap()
        };
        let climbing = slow(5, 0.12);
        assert!(!climbing.prune, "{climbing:?}");
        assert!(climbing.optimistic > climbing.incumbent);
        // The same trial with a flat curve is hopeless: the gain is what saves it.
        let flat = slow(5, 0.0);
        assert!(flat.prune, "{flat:?}");
    }

    #[test]
    fn too_few_completed_trials_prune_nothing() {
        let peers = peers_at_epoch_1();
        let hopeless = Judged {
            epoch: 1,
            value: 0.5,
            previous: None,
        };
        assert_eq!(
            judge(Direction::Maximize, 3, 7, &peers, hopeless),
            None,
            "6 peers < min_trials 7"
        );
        assert_eq!(
            judge(Direction::Maximize, 3, 1, &peers[..2], hopeless),
            None,
            "a line through 2 points has no error estimate"
        );
        assert!(
            judge(Direction::Maximize, 3, 6, &peers, hopeless)
                .unwrap()
                .prune
        );
    }

    #[test]
    fn the_last_epoch_is_never_judged() {
        let trial = Judged {
            epoch: 3,
            value: 0.1,
            previous: Some(0.1),
        };
        assert_eq!(
            judge(Direction::Maximize, 3, 3, &peers_at_epoch_1(), trial),
            None
        );
    }

    #[test]
    fn minimization_mirrors_maximization() {
        let mirrored: Vec<PeerCurve> = peers_at_epoch_1()
            .into_iter()
            .map(|p| PeerCurve {
                at_epoch: 1.0 - p.at_epoch,
                last: 1.0 - p.last,
            })
            .collect();
        let verdict = judge(
            Direction::Minimize,
            3,
            5,
            &mirrored,
            Judged {
                epoch: 1,
                value: 0.30,
                previous: None,
            },
        )
        .unwrap();
        assert!(verdict.prune, "{verdict:?}");
        assert!((verdict.incumbent - 0.098).abs() < 1e-12);
        assert!((verdict.predicted - 0.26).abs() < 0.03, "{verdict:?}");
        let good = judge(
            Direction::Minimize,
            3,
            5,
            &mirrored,
            Judged {
                epoch: 1,
                value: 0.145,
                previous: None,
            },
        )
        .unwrap();
        assert!(!good.prune, "{good:?}");
    }
}
