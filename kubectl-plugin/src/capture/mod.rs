//! `kubectl podmirror capture`.

pub mod run;
