//! Router combinators (placeholder, filled in below).
