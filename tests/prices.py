"""Oracle moves the liquidation and waterfall tests share (plain helpers, not fixtures)."""


def set_eth(cm, admin, price, vol: str = "0.6") -> None:
    """A new round of the ETH spot feed at ``price`` (USD) and of its vol feed at ``vol``."""
    cm.oracle.push(admin, "ETH/USD", str(price))
    cm.oracle.push(admin, "ETH/IV", vol)
