//! Logging. Lines carry request ids, routes, statuses and reasons; never bodies, note text,
//! identities, tokens or database passwords.
//!
//! Logging never fails a request: a line the sink cannot take (a full disk, a closed stderr) is
//! dropped and counted (`cellule_log_lines_dropped_total`), and a panic is logged with its
//! location only (its message may quote input).

pub mod metrics;

pub use metrics::Metrics;

use std::io::{IsTerminal, Write};
use std::sync::LazyLock;

use prometheus_client::metrics::counter::Counter;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

use crate::config::{LogConfig, LogFormat};

/// Log lines dropped because their sink failed, in this process (the subscriber is global).
pub(crate) static LOG_LINES_DROPPED: LazyLock<Counter> = LazyLock::new(Counter::default);

/// Installs the global subscriber (stderr; `RUST_LOG` overrides `log.level`) and the panic hook.
/// Safe to call more than once.
pub fn init(config: &LogConfig) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.level))
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(Lossy::new(std::io::stderr, LOG_LINES_DROPPED.clone()))
        // Its fallback is `eprintln!`, which panics when stderr fails too.
        .log_internal_errors(false)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    let _ = match config.format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
    std::panic::set_hook(Box::new(log_panic));
}

/// The panic hook: the location through the (lossy) log, never the message, which may quote
/// what a request sent; the default hook's print to stderr would panic again on a closed or
/// full stderr and abort the process.
fn log_panic(info: &std::panic::PanicHookInfo<'_>) {
    let location = info
        .location()
        .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()))
        .unwrap_or_else(|| "unknown".to_owned());
    let thread = std::thread::current();
    tracing::error!(location = %location, thread = thread.name().unwrap_or("unnamed"), "panic");
}

/// A [`MakeWriter`] whose writers never fail: what their sink refuses is dropped, one count
/// per refused write (the formatter writes a line at once).
pub struct Lossy<M> {
    make: M,
    dropped: Counter,
}

impl<M> Lossy<M> {
    pub fn new(make: M, dropped: Counter) -> Self {
        Self { make, dropped }
    }
}

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for Lossy<M> {
    type Writer = LossyWriter<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        LossyWriter {
            inner: self.make.make_writer(),
            dropped: self.dropped.clone(),
        }
    }
}

/// One writer of [`Lossy`].
pub struct LossyWriter<W> {
    inner: W,
    dropped: Counter,
}

impl<W: Write> Write for LossyWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.inner.write_all(buf).is_err() {
            self.dropped.inc();
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let _ = self.inner.flush();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sink that refuses everything, as a full disk or a closed stderr does.
    struct Full;

    impl Write for Full {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::Error::new(
                std::io::ErrorKind::StorageFull,
                "no space left on device",
            ))
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Err(std::io::Error::new(
                std::io::ErrorKind::StorageFull,
                "no space left on device",
            ))
        }
    }

    #[test]
    fn a_failing_sink_drops_and_counts_lines_without_panicking() {
        let dropped = Counter::<u64>::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(Lossy::new(|| Full, dropped.clone()))
            .log_internal_errors(false)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            for i in 0..5 {
                tracing::warn!(i, "a line the disk cannot take");
            }
        });
        assert_eq!(dropped.get(), 5);
    }

    #[test]
    fn a_working_sink_drops_nothing() {
        let dropped = Counter::<u64>::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(Lossy::new(std::io::sink, dropped.clone()))
            .finish();
        tracing::subscriber::with_default(subscriber, || tracing::info!("kept"));
        assert_eq!(dropped.get(), 0);
    }
}
