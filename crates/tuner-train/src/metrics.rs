//! Keras-semantics classification metrics from logits.
//!
//! - loss: mean categorical cross-entropy (from logits, in f64),
//! - accuracy: argmax of the outputs equals the label,
//! - precision / recall: Keras `Precision()` / `Recall()` on one-hot labels against the
//!   softmax outputs at threshold 0.5 (`p > 0.5`), micro-averaged over all 10 outputs,
//! - auc: exact micro ROC AUC over the flattened one-hot matrix (ties count half); Keras'
//!   `AUC()` approximates the same quantity with 200 thresholds.

use tuner_core::cnn::NUM_CLASSES;

const CLASSES: usize = NUM_CLASSES as usize;

/// One split's metrics (train or validation or test).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct SplitMetrics {
    pub loss: f64,
    pub accuracy: f64,
    pub precision: f64,
    pub recall: f64,
    pub auc: f64,
}

/// Counts of (true class, predicted class); rows are true classes.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct ConfusionMatrix {
    pub counts: [[u64; CLASSES]; CLASSES],
}

impl ConfusionMatrix {
    pub fn total(&self) -> u64 {
        self.counts.iter().flatten().sum()
    }

    /// The matrix as nested vectors (rows = true class), the JSON shape the service stores.
    pub fn to_rows(&self) -> Vec<Vec<u64>> {
        self.counts.iter().map(|r| r.to_vec()).collect()
    }
}

/// Accumulates metrics over batches.
#[derive(Debug, Default)]
pub(crate) struct MetricsAccumulator {
    loss_sum: f64,
    samples: usize,
    correct: usize,
    true_positives: u64,
    false_positives: u64,
    false_negatives: u64,
    /// Softmax outputs of every sample, for the AUC.
    probabilities: Vec<f32>,
    labels: Vec<u8>,
    confusion: ConfusionMatrix,
}

impl MetricsAccumulator {
    /// Adds a batch: `logits` is `[labels.len(), 10]` row-major. Returns the batch's mean
    /// loss (non-finite if the model diverged).
    pub fn add_batch(&mut self, logits: &[f32], labels: &[u8]) -> f64 {
        debug_assert_eq!(logits.len(), labels.len() * CLASSES);
        let mut batch_loss = 0.0;
        for (row, &label) in logits.chunks_exact(CLASSES).zip(labels) {
            let label = label as usize;
            let max = row.iter().fold(f64::NEG_INFINITY, |m, &x| m.max(x as f64));
            let sum_exp: f64 = row.iter().map(|&x| (x as f64 - max).exp()).sum();
            let log_sum = max + sum_exp.ln();
            batch_loss += log_sum - row[label] as f64;
            // First maximum wins, like argmax.
            let predicted = row
                .iter()
                .enumerate()
                .fold(0, |best, (i, &x)| if x > row[best] { i } else { best });
            if predicted == label {
                self.correct += 1;
            }
            self.confusion.counts[label][predicted] += 1;
            for (c, &x) in row.iter().enumerate() {
                let p = (x as f64 - log_sum).exp() as f32;
                let hit = p > 0.5;
                match (hit, c == label) {
                    (true, true) => self.true_positives += 1,
                    (true, false) => self.false_positives += 1,
                    (false, true) => self.false_negatives += 1,
                    (false, false) => {}
                }
                self.probabilities.push(p);
            }
        }
        self.labels.extend_from_slice(labels);
        self.loss_sum += batch_loss;
        self.samples += labels.len();
        batch_loss / labels.len().max(1) as f64
    }

    pub fn samples(&self) -> usize {
        self.samples
    }

    /// Mean loss and accuracy so far (cheap; for progress reports).
    pub fn running(&self) -> (f64, f64) {
        let n = self.samples.max(1) as f64;
        (self.loss_sum / n, self.correct as f64 / n)
    }

    pub fn finish(self) -> (SplitMetrics, ConfusionMatrix) {
        let (loss, accuracy) = self.running();
        let ratio = |a: u64, b: u64| {
            if a + b == 0 {
                0.0
            } else {
                a as f64 / (a + b) as f64
            }
        };
        let metrics = SplitMetrics {
            loss,
            accuracy,
            precision: ratio(self.true_positives, self.false_positives),
            recall: ratio(self.true_positives, self.false_negatives),
            auc: micro_auc(&self.probabilities, &self.labels),
        };
        (metrics, self.confusion)
    }
}

/// Exact ROC AUC of the scores `probabilities` (`[n, 10]`) against one-hot `labels`,
/// flattened: the probability that a random positive entry outscores a random negative
/// one, ties counting half. 0.5 when there are no positives or no negatives.
pub(crate) fn micro_auc(probabilities: &[f32], labels: &[u8]) -> f64 {
    let mut entries: Vec<(f32, bool)> = probabilities
        .chunks_exact(CLASSES)
        .zip(labels)
        .flat_map(|(row, &label)| {
            row.iter()
                .enumerate()
                .map(move |(c, &p)| (p, c == label as usize))
        })
        .collect();
    entries.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
    let positives = entries.iter().filter(|e| e.1).count() as f64;
    let negatives = entries.len() as f64 - positives;
    if positives == 0.0 || negatives == 0.0 {
        return 0.5;
    }
    // For each group of equal scores: each positive beats every negative below the
    // group and ties with half of the negatives inside it.
    let mut negatives_below = 0.0;
    let mut wins = 0.0;
    let mut i = 0;
    while i < entries.len() {
        let mut j = i;
        let (mut pos, mut neg) = (0.0, 0.0);
        while j < entries.len() && entries[j].0 == entries[i].0 {
            if entries[j].1 {
                pos += 1.0;
            } else {
                neg += 1.0;
            }
            j += 1;
        }
        wins += pos * (negatives_below + neg / 2.0);
        negatives_below += neg;
        i = j;
    }
    wins / (positives * negatives)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Logits whose softmax is exactly `probs` (log of the probabilities).
    fn logits_for(probs: &[[f64; CLASSES]]) -> Vec<f32> {
        probs
            .iter()
            .flat_map(|row| row.iter().map(|&p| p.ln() as f32))
            .collect()
    }

    fn row(hot: usize, p: f64) -> [f64; CLASSES] {
        let rest = (1.0 - p) / 9.0;
        std::array::from_fn(|c| if c == hot { p } else { rest })
    }

    #[test]
    fn hand_computed_batch() {
        // Sample 0: label 0, predicts 0 with p 0.7 (TP, correct).
        // Sample 1: label 1, predicts 2 with p 0.6 (FP for class 2, FN for class 1).
        // Sample 2: label 3, predicts 3 with p 0.4 (correct, but no output over 0.5: FN).
        let probs = [row(0, 0.7), row(2, 0.6), row(3, 0.4)];
        let mut acc = MetricsAccumulator::default();
        let batch_loss = acc.add_batch(&logits_for(&probs), &[0, 1, 3]);
        let (m, cm) = acc.finish();
        let want_loss = -(0.7f64.ln() + (0.4f64 / 9.0).ln() + 0.4f64.ln()) / 3.0;
        assert!(
            (m.loss - want_loss).abs() < 1e-6,
            "{} vs {want_loss}",
            m.loss
        );
        assert!((batch_loss - want_loss).abs() < 1e-6);
        assert!((m.accuracy - 2.0 / 3.0).abs() < 1e-12);
        // TP 1, FP 1, FN 2.
        assert!((m.precision - 0.5).abs() < 1e-12);
        assert!((m.recall - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!(cm.counts[0][0], 1);
        assert_eq!(cm.counts[1][2], 1);
        assert_eq!(cm.counts[3][3], 1);
        assert_eq!(cm.total(), 3);
        // AUC over 30 entries, 3 positives (scores 0.7, 0.4/9, 0.4) vs 27 negatives
        // (0.3/9 x9, 0.6, 0.4/9 x8, 0.6/9 x9):
        // 0.7 beats all 27; 0.4 beats all but 0.6 -> 26; 0.4/9 beats 0.3/9 x9 and ties 8.
        let want_auc = (27.0 + 26.0 + 9.0 + 8.0 / 2.0) / (3.0 * 27.0);
        assert!((m.auc - want_auc).abs() < 1e-12, "{} vs {want_auc}", m.auc);
    }

    #[test]
    fn precision_is_zero_without_predictions_over_threshold() {
        let probs = [row(0, 0.2), row(1, 0.3)];
        let mut acc = MetricsAccumulator::default();
        acc.add_batch(&logits_for(&probs), &[0, 1]);
        let (m, _) = acc.finish();
        assert_eq!(m.precision, 0.0);
        assert_eq!(m.recall, 0.0);
        assert_eq!(m.accuracy, 1.0);
        assert_eq!(m.auc, 1.0);
    }

    #[test]
    fn auc_edge_cases() {
        // Perfect ranking, reversed ranking, all tied.
        let labels = [0u8];
        let mut perfect = [0.0f32; CLASSES];
        perfect[0] = 1.0;
        assert_eq!(micro_auc(&perfect, &labels), 1.0);
        let mut reversed = [1.0f32; CLASSES];
        reversed[0] = 0.0;
        assert_eq!(micro_auc(&reversed, &labels), 0.0);
        assert_eq!(micro_auc(&[0.1f32; CLASSES], &labels), 0.5);
        assert_eq!(micro_auc(&[], &[]), 0.5);
    }

    #[test]
    fn argmax_takes_the_first_maximum() {
        let mut acc = MetricsAccumulator::default();
        acc.add_batch(&[0.0f32; CLASSES], &[0]);
        let (m, cm) = acc.finish();
        assert_eq!(m.accuracy, 1.0);
        assert_eq!(cm.counts[0][0], 1);
        assert!((m.loss - 10f64.ln()).abs() < 1e-9);
    }
}
