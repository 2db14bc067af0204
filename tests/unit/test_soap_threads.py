"""A SOAP client shared by a target's sender threads: each thread reads its own call's answer."""

from __future__ import annotations

import threading

import requests
import responses

from paht_bridge.connectors.soap import GuardedTransport

ENVELOPE = '<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><Answer>{}</Answer></s:Body></s:Envelope>'


@responses.activate
def test_an_answer_received_by_another_thread_meanwhile_is_not_read_as_this_ones() -> None:
    for n in (1, 2):
        responses.add(responses.POST, f"http://docs.example/{n}", body=ENVELOPE.format(f"DOC-{n}"), content_type="text/xml")
    transport = GuardedTransport(session=requests.Session())
    both_answered = threading.Barrier(2)
    read: dict[int, bytes] = {}

    def call(n: int) -> None:
        transport.post(f"http://docs.example/{n}", b"<x/>", {})
        both_answered.wait()  # the other thread's answer has arrived too before this one reads its own
        read[n] = transport.last_answer

    threads = [threading.Thread(target=call, args=(n,)) for n in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert b"DOC-1" in read[1] and b"DOC-2" in read[2]
    assert transport.answers == 0  # counted per thread: this one made no call
