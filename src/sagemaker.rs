//! A SageMaker endpoint as a Classifier. Feature `sagemaker`.
