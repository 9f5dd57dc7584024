//! podmirror node agent library.
