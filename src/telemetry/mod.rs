//! What the server tells its operators about itself: Prometheus metrics and the data-access
//! audit log. Both are written to by the HTTP API and the storage domain and read by nothing
//! inside the server.
//!
//! - [`metrics`]: the process's one Prometheus registry behind `/metrics`.
//! - [`labels`]: the label sets of its series.
//! - [`process`]: process memory, mapped-file residency and volume space, from Linux `/proc`.
//! - [`audit`]: the audit log (who, what, when, outcome; never PHI).

pub mod audit;
pub mod labels;
pub mod metrics;
pub mod process;
