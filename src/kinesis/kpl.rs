//! KPL aggregation format: de-aggregation and an encoder.
