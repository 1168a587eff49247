"""WeCom AI bot (智能机器人): JSON callbacks, stream replies."""
