//! Events out: device events and intake events in the formats SIEMs read. [`cef`] writes one CEF
//! line per event (pure); [`files`] keeps the CEF exchange folder; [`syslog`] sends CEF lines as
//! syslog messages; [`webhook`] posts them as seed 002's Table 1; [`sink`] runs each configured
//! sink as a durable consumer of the bus; [`gelf`] sends the live API's logs to a GELF server.

pub mod cef;
pub mod files;
pub mod gelf;
pub mod sink;
pub mod syslog;
pub mod webhook;
