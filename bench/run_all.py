"""All benchmarks, one after the other (each starts its own server). `make bench`."""

import admission
import ledger
import concurrent_streams
import prefix_cache
import single_stream
import ttft

if __name__ == "__main__":
    single_stream.main()
    ttft.main()
    concurrent_streams.main()
    prefix_cache.main()
    admission.main()
    ledger.main()
