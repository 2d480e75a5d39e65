# ProtoNet variant: the cos_mean metric (see README.md).
method = dict(type="protonet", metric="cos_mean", temperature=10.0, learn_temperature=False)
