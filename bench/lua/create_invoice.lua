-- POST the guide's invoice with an external_id no other request uses.
local body_template = [[{"firm_id": "%s", "external_id": "%s", "amount": "123.45",
"settlement_account": "Office", "external_reference": "inv-123", "currency": "AUD",
"due_date": "1953-07-23T13:56:24.084Z", "description": "Charge for case setup",
"matter": {"external_id": "my-unique-external-id", "external_reference": "my-external-reference",
"description": "The matter of Frank vs Herman ", "type": "court"},
"debtor": {"external_id": "case-client-1234", "name": "Frank", "email": "frank@email.com",
"contact_number": "1300234567"},
"line_items": [{"amount": "100", "name": "Phone call", "description": "Listened to voice message",
"quantity": 1, "tax_rate": "10"}, {"amount": "1000", "name": "Phone call",
"description": "Replied to voice mail", "quantity": 1, "tax_rate": "15"}],
"notes": ["Got to know client", "Created initial case file"], "payment_methods_override": ["Card"]}]]

local counter = 0
local threads = {}

function setup(thread)
  thread:set("thread_id", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  run_id = os.getenv("BENCH_RUN_ID") or tostring(os.time())
  firm_id = os.getenv("BENCH_FIRM_ID")
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["X-CHANNEL-PARTNER-ID"] = os.getenv("BENCH_PARTNER_ID")
  wrk.headers["X-API-KEY"] = os.getenv("BENCH_API_KEY")
end

function request()
  counter = counter + 1
  local external_id = string.format("bench-%s-%d-%d", run_id, thread_id, counter)
  return wrk.format(nil, nil, nil, string.format(body_template, firm_id, external_id))
end
