//! Events out: device events and intake events in the formats SIEMs read. [`cef`] writes one CEF
//! line per event.

pub mod cef;
