"""The crash demo (`ape run demo`, crossmargin/tools/demo.py) on this session's deployment: it shows
the whole loss waterfall (standing bids executed by the keeper, the insurance fund paying,
a deficit large enough to reach deleveraging, charged to the BTC perp's shorts), its chart's
health line ends where its final table does, and the chart is drawn.
"""

from crossmargin.tools.demo import SWEEP_SECONDS, draw_chart, run_demo


def test_demo__whole_waterfall__health_recorded_after_the_bids(cm, accounts, tmp_path):
    t = accounts
    actors = {"alice": t[2], "bob": t[3], "carol": t[5], "dave": t[6], "erin": t[7], "frank": t[8]}
    lines = []
    report = run_demo(cm, t[0], t[1], actors, t[9], t[4], progress=lines.append)
    assert any("standing" in line for line in lines)  # progress shown while it runs
    w = report.waterfall
    assert w.covered and all(c.exact for c in w.covered)
    # the fund paid first and ran out; the rest went to frank's counterparties, nothing socialized
    assert w.total("fund") > 0 and w.total("deleveraged") > 0 and w.total("socialized") < 1
    assert {report.name(a) for a in w.deleveraging_paid()} == {"ivan", "judy"}
    assert {report.name(c.account) for c in w.covered} == {"frank"}
    # standing bids filled the auctions, the solvent ones within one sweep of coming due
    assert {report.name(s.bidder) for s in w.standing} == {"grace", "heidi"}
    assert all(s.lag <= SWEEP_SECONDS + 30 for s in w.standing if s.due is not None)
    # the health line's last point is the final table's (recorded after the bids)
    assert report.steps[-1] == "after"
    for name, values in report.health.items():
        assert values[-1] == report.final[name][2]
    assert report.final["frank"][2] >= 0
    assert draw_chart(report, tmp_path / "demo.png").stat().st_size > 0
