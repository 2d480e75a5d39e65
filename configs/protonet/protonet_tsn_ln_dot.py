# ProtoNet variant: the tsn_ln_dot metric (see README.md).
method = dict(type="protonet", metric="tsn_ln_dot", temperature=10.0, learn_temperature=False)
