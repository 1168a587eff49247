"""Configuration: the one ``Settings`` object (environment prefix ``QUNZHI_``). Every layer may import it."""
