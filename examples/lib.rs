//! Helpers shared by the examples, and the apps a test drives.

#[path = "login_app.rs"]
pub mod login;
