//! Amazon Machine Learning realtime Predict as a Classifier. Feature `machine-learning`.
