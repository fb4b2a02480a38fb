//! mobile-admin: an administration server for mobile security apps speaking aklwngt.
pub mod soap;
