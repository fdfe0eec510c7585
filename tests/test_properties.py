"""Property-based tests of vault accounting (Hypothesis, on anvil).

A stateful machine deposits, withdraws and moves random amounts of 6, 8 and 18 decimal
tokens between actors and subaccounts, and after every step checks:
  - conservation: each token's vault balance, in WAD, equals the sum of all claims on it
    (and `total`), to the wei;
  - no over-withdrawal: a withdrawal beyond a balance reverts and changes nothing;
  - every account the step touched holds what a plain Python ledger says it should.
"""

import ape
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from sizes import examples

from crossmargin.units import from_units, to_units

SYMBOLS = ("USDC", "WBTC", "WETH")
SUBACCOUNTS = (0, 1, 2)
SETTINGS = settings(
    max_examples=examples(10),
    stateful_step_count=20,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)

amounts = st.integers(min_value=1, max_value=10**6)  # in the token's smallest unit, scaled below


class VaultAccounting(RuleBasedStateMachine):
    cm = None
    actors = ()
    admin = None
    chain = None

    @initialize()
    def start(self):
        self.snapshot = self.chain.snapshot()
        self.ledger = {}  # (actor index, sub, symbol) -> token units
        self.touched = []  # accounts changed by the last step

    def teardown(self):
        self.chain.restore(self.snapshot)

    def _units(self, symbol, raw):
        # spread amounts over several orders of magnitude of each token
        token = self.cm.token(symbol)
        return raw * 10 ** max(token.decimals - 6, 0)

    @rule(actor=st.integers(0, 1), sub=st.sampled_from(SUBACCOUNTS), symbol=st.sampled_from(SYMBOLS), raw=amounts)
    def deposit(self, actor, sub, symbol, raw):
        token = self.cm.token(symbol)
        units = self._units(symbol, raw)
        who = self.actors[actor]
        token.contract.mint(who, units, sender=self.admin)
        token.contract.approve(self.cm.vault.address, units, sender=who)
        self.cm.vault.contract.deposit(token.address, units, sub, who, sender=who)
        key = (actor, sub, symbol)
        self.ledger[key] = self.ledger.get(key, 0) + units
        self.touched = [key]

    @rule(
        actor=st.integers(0, 1),
        sub=st.sampled_from(SUBACCOUNTS),
        symbol=st.sampled_from(SYMBOLS),
        share=st.floats(0.01, 1.5),
    )
    def withdraw(self, actor, sub, symbol, share):
        token, who = self.cm.token(symbol), self.actors[actor]
        before = token.contract.balanceOf(who)
        units = self._take(
            actor, sub, symbol, share, lambda u: self.cm.vault.contract.withdraw(token.address, u, sub, who, sender=who)
        )
        if units:
            assert token.contract.balanceOf(who) - before == units

    def _take(self, actor, sub, symbol, share, send):
        """Takes `share` of an account's ledger balance with `send(units)`; over 100% must revert."""
        key = (actor, sub, symbol)
        have = self.ledger.get(key, 0)
        units = max(1, int(have * share))
        self.touched = [key]
        if units > have:
            with ape.reverts("vault: insufficient balance"):
                send(units)
            return 0
        send(units)
        self.ledger[key] = have - units
        return units

    @rule(
        actor=st.integers(0, 1),
        src=st.sampled_from(SUBACCOUNTS),
        dst=st.sampled_from(SUBACCOUNTS),
        symbol=st.sampled_from(SYMBOLS),
        share=st.floats(0.01, 1.5),
    )
    def move(self, actor, src, dst, symbol, share):
        if src == dst:
            return
        token, who = self.cm.token(symbol), self.actors[actor]
        units = self._take(
            actor, src, symbol, share, lambda u: self.cm.vault.contract.move(token.address, u, src, dst, sender=who)
        )
        if units:
            self.ledger[(actor, dst, symbol)] = self.ledger.get((actor, dst, symbol), 0) + units
            self.touched.append((actor, dst, symbol))

    @invariant()
    def conservation(self):
        vault = self.cm.vault.contract
        for actor, sub, symbol in self.touched:
            token = self.cm.token(symbol)
            who = self.actors[actor]
            claim = vault.cash_of(who, sub) if symbol == "USDC" else vault.balance_of(who, sub, token.address)
            assert claim == self.ledger.get((actor, sub, symbol), 0) * 10 ** (18 - token.decimals)
        for symbol in SYMBOLS:
            token = self.cm.token(symbol)
            scale = 10 ** (18 - token.decimals)
            claims = sum(units for (_, _, s), units in self.ledger.items() if s == symbol) * scale
            assert token.contract.balanceOf(vault) * scale == claims == vault.assets(token.address).total


@pytest.mark.slow
def test_vault_accounting__random_sequences(cm, admin, trader, stranger, chain):
    VaultAccounting.cm = cm
    VaultAccounting.actors = (trader, stranger)
    VaultAccounting.admin = admin
    VaultAccounting.chain = chain
    machine = VaultAccounting.TestCase
    machine.settings = SETTINGS
    machine().runTest()


def test_units__round_trip(symbol):
    """SDK conversions are exact both ways for every decimals of the matrix."""
    from hypothesis import given

    decimals = {"USDC": 6, "WBTC": 8, "WETH": 18}[symbol]

    @given(st.integers(min_value=0, max_value=10**30))
    @settings(max_examples=examples(200))
    def check(units):
        assert to_units(from_units(units, decimals), decimals) == units

    check()
