"""Operating a deployment: what an operator uses to put the protocol on a chain.

- :mod:`crossmargin.ops.config`: the typed network config (``config/<network>.yaml``)
- :mod:`crossmargin.ops.deploy`: the idempotent deploy and its dry run
- :mod:`crossmargin.ops.manifest`: the deployment manifest (addresses, ids, ABIs)
- :mod:`crossmargin.ops.anvil`: the ape + anvil settings every entry point loads
"""
