// The payment page's script: switch methods, send the payment, show the outcome. Where the
// processor's form takes the card (data-card-form-key: Stripe Elements), the card goes from
// this browser to the processor alone, and partnerpay is sent the processor's token for it.
(function () {
  "use strict";
  var form = document.getElementById("pay-form");
  if (!form) { return; }
  var button = document.getElementById("pay-button");
  var errorBox = document.getElementById("pay-error");
  var invoiceId = form.dataset.invoiceId;
  var redirectUrl = form.dataset.redirectUrl;
  var processor = null;
  var cardElement = null;
  if (form.dataset.cardFormKey) {
    var account = form.dataset.cardFormAccount;
    processor = window.Stripe(form.dataset.cardFormKey, account ? { stripeAccount: account } : undefined);
    cardElement = processor.elements().create("card");
    cardElement.mount("#card-element");
  }

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
    if (method === "Card" && processor) {
      payment.card_token = cardToken;
    } else if (method === "Card") {
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
    "card": "Card", "card_token": "Card", "card.cvc": "Security code", "card.name": "Name on card",
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

  function post(path, payload) {
    return fetch(path, {
      method: "POST",
      headers: { "Content-Type": "application/json", "Accept": "application/json" },
      body: JSON.stringify(payload)
    }).then(function (response) {
      return response.json().then(function (data) {
        return { ok: response.ok, status: response.status, data: data };
      });
    });
  }

  // The processor's token for the card of this attempt, once its form has checked it.
  var cardToken = null;
  var Refused = function (message) { this.message = message; };

  function processorMessage(error) {
    if (error && (error.type === "card_error" || /declined/i.test(error.message || ""))) {
      return "The card was declined. Try another card or payment method.";
    }
    return (error && error.message) || "The card could not be checked. Try again.";
  }

  // Collect and check the card in the processor's form (3-D Secure included), before
  // partnerpay is asked to charge it.
  function collectCard() {
    if (!processor || selectedMethod() !== "Card" || cardToken) { return Promise.resolve(); }
    return post("/pay/" + invoiceId + "/card-setup", {}).then(function (result) {
      if (!result.ok) { throw new Refused(describe(result.data)); }
      return processor.confirmCardSetup(result.data.client_secret, {
        payment_method: { card: cardElement, billing_details: { name: value("name") } }
      });
    }).then(function (setup) {
      if (setup.error) { throw new Refused(processorMessage(setup.error)); }
      cardToken = setup.setupIntent.payment_method;
    });
  }

  // A payment the processor wants the payer to authenticate: let its script do so, then
  // ask partnerpay what came of it.
  function authenticate(result) {
    var action = result.data.next_action;
    if (!result.ok || !action) { return result; }
    return processor.confirmCardPayment(action.client_secret).then(function () {
      var payment = result.data.payment;
      return post("/pay/" + invoiceId + "/payments/" + payment.payment_id + "/confirm", {});
    });
  }

  function paid(payment) {
    if (payment.payment_status === "RequiresAction") {
      throw new Refused("The payment was not authenticated. Try again or use another card.");
    }
    window.location.assign(redirectUrl || "/pay/" + invoiceId + "/receipt/" + payment.payment_id);
  }

  function attemptOver() {
    idempotencyKey = newKey();  // that attempt is over; the next one is a new payment
    cardToken = null;
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    if (button.disabled) { return; }
    button.disabled = true;
    button.textContent = "Processing…";
    errorBox.hidden = true;
    collectCard().then(function () {
      return post("/pay/" + invoiceId + "/payments", body());
    }).then(authenticate).then(function (result) {
      if (result.ok) {
        paid(result.data.payment);
        return;
      }
      if (result.status !== 503) { attemptOver(); }  // 503: the outcome is unknown
      fail(describe(result.data));
    }).catch(function (error) {
      if (error instanceof Refused) {
        attemptOver();
        fail(error.message);
        return;
      }
      // The outcome is unknown: keep the key, so trying again cannot charge twice.
      fail("We couldn't reach the payment service. Check your connection and try again.");
    });
  });

  showMethod();
})();
