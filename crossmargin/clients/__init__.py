"""The SDK's clients of a deployed protocol: what a trader, an integrator or a script uses.

- :mod:`crossmargin.clients.protocol`: ``Protocol`` (the console's ``cm``) and its clients
- :mod:`crossmargin.clients.orders`: EIP-712 orders
- :mod:`crossmargin.clients.fund`: the insurance fund
- :mod:`crossmargin.clients.sender`: the pipelined transaction sender
- :mod:`crossmargin.clients.errors`: typed errors and one-line messages

Nothing is imported here, so that a light module (errors) does not pull in ape's chain.
"""
