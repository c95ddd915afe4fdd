//! Integration tests of the domain over the real sled store in a temporary
//! folder, with real key files and a clock the tests move by hand.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod access_requests;
mod accounts;
mod audit;
mod binding;
mod concurrency;
mod consent;
mod credentials;
mod demo;
mod erasure;
mod hashing;
mod helpers;
mod identity;
mod keys;
mod sessions;
mod throttle;
mod two_factor;
