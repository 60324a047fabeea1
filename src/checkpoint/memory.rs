//! The in-memory checkpoint store.
