"""The AWS deployment of Payment Queue: one CDK app, one stack per environment."""

from infra.node import use_locked_node

# Before anything imports aws_cdk, which starts jsii's node (infra/node.py): the locked Node.js LTS.
use_locked_node()
