"""Subscriptions (MQTT 5.0 sections 3.8-3.11 and 4.7): wildcards, overlap,
options, identifiers, unsubscribe."""

from conftest import Client, PacketTypes, paho, props, unique, wait_until
import rawmqtt


def options(qos=0, no_local=False, retain_as_published=False, retain_handling=0):
    return paho.SubscribeOptions(qos=qos, noLocal=no_local, retainAsPublished=retain_as_published,
                                 retainHandling=retain_handling)


def test_MQTT_4_7_1_wildcards_match_as_specified(broker, clients):
    base = unique("wild")
    subscriber = clients(broker.port, version=4)
    subscriber.subscribe(f"{base}/+/temp", qos=0)
    subscriber.subscribe(f"{base}/house/#", qos=0)
    publisher = clients(broker.port, version=4)
    for topic in (f"{base}/room/temp", f"{base}/room/humidity", f"{base}/house", f"{base}/house/a/b",
                  f"{base}/a/b/temp"):
        publisher.publish(topic, topic.encode(), qos=1)
    got = sorted(m.topic for m in subscriber.receive_n(3))
    assert got == sorted([f"{base}/room/temp", f"{base}/house", f"{base}/house/a/b"])
    subscriber.expect_nothing()


def test_MQTT_4_7_2_1_hash_does_not_match_dollar_topics(make_broker, clients):
    process = make_broker("sys_interval_s: 1\n")
    everything = clients(process.port, version=5)
    everything.subscribe("#", qos=0)
    sys = clients(process.port, version=5)
    sys.subscribe("$SYS/broker/uptime", qos=0)
    assert sys.receive(timeout=5).topic == "$SYS/broker/uptime"
    # A message published after that one reaches `everything` after any
    # $SYS message would have: once it is in, the queue has all there is.
    barrier = unique("barrier")
    sys.publish(barrier, b"x", qos=1)
    topics = []
    while not topics or topics[-1] != barrier:
        topics.append(everything.receive().topic)
    assert not [t for t in topics if t.startswith("$")]


def test_MQTT_3_3_4_2_overlapping_subscriptions_deliver_once_at_the_highest_qos(broker, clients):
    base = unique("overlap")
    subscriber = clients(broker.port, version=4)
    subscriber.subscribe(f"{base}/#", qos=0)
    subscriber.subscribe(f"{base}/+", qos=2)
    subscriber.subscribe(f"{base}/a", qos=1)
    clients(broker.port, version=4).publish(f"{base}/a", b"x", qos=2)
    message = subscriber.receive()
    assert message.qos == 2
    subscriber.expect_nothing()


def test_MQTT_3_3_4_3_overlapping_subscriptions_send_every_identifier(broker, clients):
    base = unique("ids")
    subscriber = clients(broker.port, version=5)
    subscriber.subscribe(f"{base}/#", options=options(1),
                         properties=props(PacketTypes.SUBSCRIBE, SubscriptionIdentifier=11))
    subscriber.subscribe(f"{base}/+", options=options(1),
                         properties=props(PacketTypes.SUBSCRIBE, SubscriptionIdentifier=22))
    subscriber.subscribe(f"{base}/a", options=options(1))
    clients(broker.port, version=5).publish(f"{base}/a", b"x", qos=1)
    message = subscriber.receive()
    assert sorted(message.properties.SubscriptionIdentifier) == [11, 22]
    subscriber.expect_nothing()


def test_MQTT_3_8_4_3_resubscribing_replaces_the_subscription(broker, clients):
    topic = unique("replace")
    subscriber = clients(broker.port, version=5)
    subscriber.subscribe(topic, qos=0)
    subscriber.subscribe(topic, qos=2)
    clients(broker.port, version=5).publish(topic, b"x", qos=2)
    assert subscriber.receive().qos == 2
    subscriber.expect_nothing()


def test_MQTT_3_8_3_3_no_local_skips_the_publishers_own_messages(broker, clients):
    topic = unique("nolocal")
    client = clients(broker.port, version=5)
    client.subscribe(topic, options=options(1, no_local=True))
    other = clients(broker.port, version=5)
    other.subscribe(topic, qos=1)
    client.publish(topic, b"mine", qos=1)
    assert other.receive().payload == b"mine"
    client.expect_nothing()


def test_MQTT_3_3_1_12_retain_as_published_keeps_the_retain_flag(broker, clients):
    topic = unique("rap")
    keeps = clients(broker.port, version=5)
    keeps.subscribe(topic, options=options(1, retain_as_published=True, retain_handling=2))
    clears = clients(broker.port, version=5)
    clears.subscribe(topic, options=options(1, retain_handling=2))
    clients(broker.port, version=5).publish(topic, b"r", qos=1, retain=True)
    assert keeps.receive().retain
    assert not clears.receive().retain
    clients(broker.port, version=5).publish(topic, b"", qos=1, retain=True)  # clean up


def test_MQTT_3_3_1_9_retain_handling_0_1_2(broker, clients):
    topic = unique("rh")
    clients(broker.port, version=5).publish(topic, b"stored", qos=1, retain=True)
    always = clients(broker.port, version=5)
    always.subscribe(topic, options=options(1, retain_handling=0))
    assert always.receive().payload == b"stored"
    always.subscribe(topic, options=options(1, retain_handling=0))
    assert always.receive().payload == b"stored"  # again on every subscribe

    if_new = clients(broker.port, version=5)
    if_new.subscribe(topic, options=options(1, retain_handling=1))
    assert if_new.receive().payload == b"stored"
    if_new.subscribe(topic, options=options(1, retain_handling=1))
    if_new.expect_nothing()  # not for an existing subscription

    never = clients(broker.port, version=5)
    never.subscribe(topic, options=options(1, retain_handling=2))
    never.expect_nothing()
    clients(broker.port, version=5).publish(topic, b"", qos=1, retain=True)


def test_MQTT_3_11_3_unsubscribe_reports_each_filter(broker, clients):
    topic = unique("unsub")
    client = clients(broker.port, version=5)
    client.subscribe(topic, qos=1)
    reasons = client.unsubscribe([topic, unique("never")])
    assert [r.value for r in reasons] == [0x00, 0x11]
    clients(broker.port, version=5).publish(topic, b"x", qos=1)
    client.expect_nothing()


def test_v311_unsubscribe_stops_delivery(broker, clients):
    topic = unique("unsub311")
    client = clients(broker.port, version=4)
    client.subscribe(topic, qos=1)
    client.unsubscribe(topic)
    clients(broker.port, version=4).publish(topic, b"x", qos=1)
    client.expect_nothing()


def test_subscription_identifier_is_sent_with_matching_messages(broker, clients):
    topic = unique("subid")
    client = clients(broker.port, version=5)
    client.subscribe(topic, options=options(1),
                     properties=props(PacketTypes.SUBSCRIBE, SubscriptionIdentifier=268435455))
    clients(broker.port, version=5).publish(topic, b"x", qos=1)
    assert client.receive().properties.SubscriptionIdentifier == [268435455]


def test_wildcard_subscriptions_can_be_disabled(make_broker, clients):
    process = make_broker("mqtt:\n  wildcard_subscriptions: false\n")
    client = clients(process.port, version=5)
    granted = client.subscribe("a/#", qos=1)
    assert granted[0].value == 0xA2


def test_max_subscriptions_per_client_refuses_more_with_quota_exceeded(make_broker, clients):
    process = make_broker("limits:\n  max_subscriptions_per_client: 2\n")
    client = clients(process.port, version=5)
    assert client.subscribe("one", qos=1)[0].value == 1
    assert client.subscribe("two", qos=1)[0].value == 1
    assert client.subscribe("three", qos=1)[0].value == 0x97
    assert client.subscribe("one", qos=0)[0].value == 0  # replacing one is not a new one


def test_MQTT_3_3_4_3_identifiers_reach_a_subscriber_among_others_across_workers(make_broker,
                                                                                  clients):
    # One subscriber holds two overlapping subscriptions with identifiers,
    # three others hold the same filters without, and publishers on both
    # workers send to topics that match one or both. Every delivery to the
    # first carries exactly the identifiers of the filters the topic matches.
    broker = make_broker(args=["--workers", "2"])
    for _ in range(4):  # fresh clients each round: they land on other workers
        base = unique("wc")
        others = []
        for flt in (f"{base}/#", f"{base}/+/temp", f"{base}/b/temp"):
            other = clients(broker.port, version=5)
            other.subscribe(flt, options=options(1))
            others.append(other)
        holder = clients(broker.port, version=5)
        holder.subscribe(f"{base}/+/temp", options=options(1),
                         properties=props(PacketTypes.SUBSCRIBE, SubscriptionIdentifier=11))
        holder.subscribe(f"{base}/#", options=options(1),
                         properties=props(PacketTypes.SUBSCRIBE, SubscriptionIdentifier=12))
        per_topic = 10
        publishers = [clients(broker.port, version=5) for _ in range(6)]
        for publisher in publishers:
            for i in range(per_topic):
                publisher.publish(f"{base}/b/temp", b"t", qos=1, wait=False)
                publisher.publish(f"{base}/a/hum", b"h", qos=1, wait=False)
        sent = len(publishers) * per_topic
        got = holder.receive_n(2 * sent)
        wrong = [(m.topic, sorted(m.properties.SubscriptionIdentifier))
                 for m in got
                 if sorted(m.properties.SubscriptionIdentifier)
                 != ([11, 12] if m.topic.endswith("/b/temp") else [12])]
        assert not wrong, f"{len(wrong)} of {len(got)} deliveries with the wrong identifiers: {wrong[:5]}"
        assert len(others[0].receive_n(2 * sent)) == 2 * sent
        assert len(others[1].receive_n(sent)) == sent
        assert len(others[2].receive_n(sent)) == sent
        for client in others + [holder]:
            client.expect_nothing(within=0.2)
