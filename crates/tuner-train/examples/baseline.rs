//! Trains the student's baseline (or measures its throughput) on the real data:
//!
//! ```text
//! cargo run --release -p tuner-train --example baseline -- [EPOCHS] [SEED]
//! cargo run --release -p tuner-train --example baseline -- bench [BATCHES]
//! ```

use tuner_train::{
    CnnConfig, EpochControl, EpochMetrics, FashionMnist, TrainOptions, evaluate,
    measure_throughput, train,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let data = FashionMnist::load(None)?;
    let cfg = CnnConfig::default();
    if args.first().map(String::as_str) == Some("bench") {
        let batches = args.get(1).map_or(Ok(100), |s| s.parse())?;
        let t = measure_throughput(&cfg, &data, batches, 0)?;
        println!(
            "baseline, batch {}, {} threads: {:.0} img/s ({} images in {:.2}s)",
            t.batch_size, t.threads, t.images_per_second, t.images, t.seconds
        );
        return Ok(());
    }
    let epochs = args.first().map_or(Ok(10), |s| s.parse())?;
    let seed = args.get(1).map_or(Ok(0), |s| s.parse())?;
    let opts = TrainOptions {
        epochs,
        seed,
        ..TrainOptions::default()
    };
    let outcome = train(&cfg, &data, &opts, &mut |m: &EpochMetrics| {
        let v = m.val.expect("validation split");
        println!(
            "epoch {:2}: {:6.2}s {:6.0} img/s loss {:.4} acc {:.4} | val_loss {:.4} val_acc {:.4} \
             val_prec {:.4} val_rec {:.4} val_auc {:.4}",
            m.epoch,
            m.train_seconds,
            m.images_per_second,
            m.train.loss,
            m.train.accuracy,
            v.loss,
            v.accuracy,
            v.precision,
            v.recall,
            v.auc
        );
        EpochControl::Continue
    })?;
    let test = evaluate(&outcome.model, &data.test, 1000)?;
    let t = test.metrics;
    println!(
        "test: loss {:.4} accuracy {:.4} precision {:.4} recall {:.4} auc {:.4}",
        t.loss, t.accuracy, t.precision, t.recall, t.auc
    );
    for row in test.confusion.to_rows() {
        println!("{row:?}");
    }
    Ok(())
}
