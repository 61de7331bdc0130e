// The payment page's only script: switch methods, send the payment, show the outcome.
(function () {
  "use strict";
  var form = document.getElementById("pay-form");
  if (!form) { return; }
  var button = document.getElementById("pay-button");
  var errorBox = document.getElementById("pay-error");
  var invoiceId = form.dataset.invoiceId;
  var redirectUrl = form.dataset.redirectUrl;

  function newKey() {
    var bytes = new Uint8Array(16);
    window.crypto.getRandomValues(bytes);
    return Array.prototype.map.call(bytes, function (b) { return b.toString(16).padStart(2, "0"); }).join("");
  }
  // One key per attempt: a double click or a retried request reuses it and is charged once.
  var idempotencyKey = newKey();

  function selectedMethod() {
    var checked = form.querySelector("input[name=method]:checked");
    return checked ? checked.value : "Card";
  }

  function showMethod() {
    var method = selectedMethod();
    form.querySelectorAll("fieldset[data-method]").forEach(function (fields) {
      fields.hidden = fields.dataset.method !== method;
    });
    button.textContent = method === "Card" ? button.dataset.labelCard : button.dataset.labelOther;
  }

  function value(name) {
    var input = form.querySelector("fieldset[data-method]:not([hidden]) [name=" + name + "]");
    return input ? input.value.trim() : "";
  }

  function body() {
    var method = selectedMethod();
    var payment = { method: method, idempotency_key: idempotencyKey };
    if (method === "Card") {
      payment.card = {
        name: value("name"), number: value("number"), exp_month: value("exp_month"),
        exp_year: value("exp_year"), cvc: value("cvc")
      };
    } else {
      payment.direct_debit = {
        account_name: value("account_name"), bsb: value("bsb"), account_number: value("account_number")
      };
    }
    return payment;
  }

  var FIELD_LABELS = {
    "card.number": "Card number", "card.exp_month": "Expiry month", "card.exp_year": "Expiry year",
    "card": "Card", "card.cvc": "Security code", "card.name": "Name on card",
    "direct_debit.account_name": "Account name", "direct_debit.bsb": "BSB",
    "direct_debit.account_number": "Account number", "amount": "Amount", "method": "Payment method"
  };

  function describe(problem) {
    var fields = (problem.error_context && problem.error_context.fields) || [];
    if (fields.length) {
      return fields.map(function (f) { return (FIELD_LABELS[f.field] || f.field) + " " + f.message; }).join(". ") + ".";
    }
    return problem.detail || "The payment could not be completed.";
  }

  function fail(message) {
    errorBox.textContent = message;
    errorBox.hidden = false;
    button.disabled = false;
    showMethod();
    errorBox.focus && errorBox.setAttribute("tabindex", "-1");
    errorBox.focus();
  }

  form.addEventListener("change", function (event) {
    if (event.target.name === "method") { showMethod(); }
  });

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    if (button.disabled) { return; }
    button.disabled = true;
    button.textContent = "Processing…";
    errorBox.hidden = true;
    fetch("/pay/" + invoiceId + "/payments", {
      method: "POST",
      headers: { "Content-Type": "application/json", "Accept": "application/json" },
      body: JSON.stringify(body())
    }).then(function (response) {
      return response.json().then(function (data) { return { ok: response.ok, data: data }; });
    }).then(function (result) {
      if (result.ok) {
        var payment = result.data.payment;
        window.location.assign(redirectUrl || "/pay/" + invoiceId + "/receipt/" + payment.payment_id);
        return;
      }
      idempotencyKey = newKey();  // that attempt is over; the next one is a new payment
      fail(describe(result.data));
    }).catch(function () {
      // The outcome is unknown: keep the key, so trying again cannot charge twice.
      fail("We couldn't reach the payment service. Check your connection and try again.");
    });
  });

  showMethod();
})();
