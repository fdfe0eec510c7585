import time
from crossmargin.units import to_wad
def test_x(cm, create_account, maker, taker, list_option, chain):
    create_account(maker, {"USDC": "100000"})
    create_account(taker, {"USDC": "100"})
    call = list_option()
    order = cm.exchange.make_order(maker, call, True, to_wad(1), to_wad(200))
    sig = cm.exchange.sign(maker, order)
    t = time.time()
    try:
        r = chain.provider.web3.eth.call({"from": taker.address, "to": cm.exchange.address, "data": cm.exchange.contract.fill.as_transaction(order.as_tuple(), maker.address, sig, to_wad(1), 0, taker.address, sender=taker).data, "gas": 30_000_000})
        print("ok", r)
    except Exception as e:
        print("ERR", repr(e)[:300])
    print("took", time.time() - t)
