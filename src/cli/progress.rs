//! Progress of a sync: one bar per stream on a terminal, plain log lines otherwise, nothing
//! with `--quiet`. The library reports through [`crate::streams::Progress`]; only this file
//! draws.

use crate::streams::{self, StreamOutcome};

/// Progress bars per stream on a terminal; plain log lines otherwise; nothing with `--quiet`.
pub struct Bars {
    multi: Option<indicatif::MultiProgress>,
    bars: std::sync::Mutex<std::collections::HashMap<&'static str, indicatif::ProgressBar>>,
}

impl Bars {
    pub fn new(quiet: bool) -> std::sync::Arc<Bars> {
        let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
        std::sync::Arc::new(Bars {
            multi: (tty && !quiet).then(indicatif::MultiProgress::new),
            bars: Default::default(),
        })
    }
}

impl streams::Progress for Bars {
    fn part(&self, stream: &'static str, label: &'static str, total: Option<u64>) {
        let Some(multi) = &self.multi else {
            tracing::info!(stream, part = label, rows = total, "Scanning.");
            return;
        };
        let mut bars = self.bars.lock().unwrap_or_else(|e| e.into_inner());
        let bar = bars.entry(stream).or_insert_with(|| {
            let bar = multi.add(indicatif::ProgressBar::new(0));
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{prefix:>13} {bar:30} {pos:>7}/{len:7} {per_sec:>10} eta {eta} {msg}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            bar.set_prefix(stream);
            bar
        });
        bar.inc_length(total.unwrap_or(0));
        bar.set_message(label);
    }

    fn rows(&self, stream: &'static str, rows: u64) {
        if let Some(bar) = self
            .bars
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(stream)
        {
            bar.inc(rows);
        }
    }

    fn finished(&self, stream: &'static str, outcome: &StreamOutcome) {
        match self
            .bars
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(stream)
        {
            Some(bar) if outcome.error.is_some() => bar.abandon_with_message("failed"),
            Some(bar) => bar.finish_with_message("done"),
            None => tracing::info!(
                stream,
                new = outcome.new,
                changed = outcome.changed,
                deleted = outcome.deleted,
                "Stream finished."
            ),
        }
    }
}
