"""URL fetching adapters: the SSRF guard and the origin client the fetch workers use."""
