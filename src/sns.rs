//! Amazon SNS as a Router. Feature `sns`.
