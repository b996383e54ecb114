"""The runtime core: configuration, context, pseudo-variables, statistics, RPC, timers."""
