"""The AWS deployment of Payment Queue: one CDK app, one stack per environment."""
