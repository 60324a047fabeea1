//! The DynamoDB checkpoint store (KCL lease table). Feature `dynamodb`.
