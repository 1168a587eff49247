"""WeCom self-built app: callbacks (inbound), message/send and appchat (sender), callback crypto."""
