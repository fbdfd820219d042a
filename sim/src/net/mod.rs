//! Flow-level bandwidth model.
