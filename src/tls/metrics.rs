//! TLS counters of the whole process: handshakes on ferry's TLS listeners by result and the
//! versions they agreed on. Handshakes are rare next to requests, so one set of shared 32-bit
//! atomics does (no 64-bit atomics: 32-bit MIPS has none; Prometheus handles the wrap).

use std::fmt::Write;
use std::sync::atomic::{AtomicU32, Ordering};

/// Why handshakes failed, as the metric's `result` label says it.
pub const REASONS: [&str; 7] = [
    "eof",
    "alert",
    "incompatible",
    "bad_message",
    "bad_certificate",
    "timeout",
    "other",
];

static OK: AtomicU32 = AtomicU32::new(0);
static RESUMED: AtomicU32 = AtomicU32::new(0);
static FAILED: [AtomicU32; REASONS.len()] = [const { AtomicU32::new(0) }; REASONS.len()];
static V12: AtomicU32 = AtomicU32::new(0);
static V13: AtomicU32 = AtomicU32::new(0);

/// A handshake on a TLS listener ended well.
pub fn established(resumed: bool, version: Option<&str>) {
    if resumed { &RESUMED } else { &OK }.fetch_add(1, Ordering::Relaxed);
    match version {
        Some("1.3") => V13.fetch_add(1, Ordering::Relaxed),
        _ => V12.fetch_add(1, Ordering::Relaxed),
    };
}

/// A handshake on a TLS listener failed for `reason` (one of [`REASONS`]).
pub fn failed(reason: &str) {
    let i = REASONS
        .iter()
        .position(|r| *r == reason)
        .unwrap_or(REASONS.len() - 1);
    FAILED[i].fetch_add(1, Ordering::Relaxed);
}

/// The `result` label of a rustls error.
pub fn reason(e: &rustls::Error) -> &'static str {
    use rustls::Error as E;
    match e {
        E::AlertReceived(_) => "alert",
        E::PeerIncompatible(_) => "incompatible",
        E::InvalidMessage(_)
        | E::InappropriateMessage { .. }
        | E::InappropriateHandshakeMessage { .. }
        | E::PeerMisbehaved(_)
        | E::DecryptError => "bad_message",
        E::InvalidCertificate(_) | E::NoCertificatesPresented => "bad_certificate",
        _ => "other",
    }
}

/// The families `ferry_tls_handshakes_total` and `ferry_tls_sessions_total`.
pub fn write(out: &mut String) {
    let n = |a: &AtomicU32| a.load(Ordering::Relaxed);
    out.push_str(
        "# HELP ferry_tls_handshakes_total TLS handshakes on ferry's listeners by result.\n",
    );
    out.push_str("# TYPE ferry_tls_handshakes_total counter\n");
    let _ = writeln!(
        out,
        "ferry_tls_handshakes_total{{result=\"ok\"}} {}",
        n(&OK)
    );
    let _ = writeln!(
        out,
        "ferry_tls_handshakes_total{{result=\"resumed\"}} {}",
        n(&RESUMED)
    );
    for (r, c) in REASONS.iter().zip(&FAILED) {
        let _ = writeln!(out, "ferry_tls_handshakes_total{{result=\"{r}\"}} {}", n(c));
    }
    out.push_str("# HELP ferry_tls_sessions_total TLS sessions established by protocol version.\n");
    out.push_str("# TYPE ferry_tls_sessions_total counter\n");
    let _ = writeln!(
        out,
        "ferry_tls_sessions_total{{version=\"1.2\"}} {}",
        n(&V12)
    );
    let _ = writeln!(
        out,
        "ferry_tls_sessions_total{{version=\"1.3\"}} {}",
        n(&V13)
    );
}
