# ProtoNet variant: the cos_framewise metric (see README.md).
method = dict(type="protonet", metric="cos_framewise", temperature=10.0, learn_temperature=False)
