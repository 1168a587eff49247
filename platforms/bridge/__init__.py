"""Signed bridge for personal WeChat and other platforms (protocol in BRIDGE.md)."""
