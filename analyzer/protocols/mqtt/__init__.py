"""MQTT 3.1, 3.1.1 and 5.0 (OASIS): the decoder and its content detector."""

from analyzer.protocols.mqtt.decoder import MqttDecoder
from analyzer.protocols.mqtt.wire import detect_connect

__all__ = ["MqttDecoder", "detect_connect"]
