-- GET with the partner's credentials.
function init(args)
  wrk.headers["X-CHANNEL-PARTNER-ID"] = os.getenv("BENCH_PARTNER_ID")
  wrk.headers["X-API-KEY"] = os.getenv("BENCH_API_KEY")
end
