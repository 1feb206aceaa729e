"""The Siamese face-verification model and the one preprocessing path shared by serving,
training and evaluation."""
