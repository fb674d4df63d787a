"""What services embed: the canary ``Router`` and the never-blocking ``EventProducer``.

(Built by the "Producers" issue; this package is importable from the start so the layout
and the distribution are fixed.)
"""
