//! Integration tests of the web layer: the real application on a port of its
//! own, over the real sled store in a temporary folder, driven by an HTTP
//! client that keeps cookies like a browser and does not follow redirects.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod access;
mod access_requests;
mod cookies;
mod csrf;
mod enumeration;
mod export;
mod feeds;
mod fhir;
mod fhir_resources;
mod headers;
mod helpers;
mod hostile;
mod input;
mod metrics;
mod orgs;
mod professional;
mod questionnaires;
mod route_sweep;
mod sharing;
mod system;
mod throttle;
mod two_factor;
mod worklists;
