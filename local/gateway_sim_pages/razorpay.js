// Stand-in for Razorpay Standard Checkout's https://checkout.razorpay.com/v1/checkout.js, with its
// calling shape (razorpay.com/docs/payments/payment-gateway/web-integration/standard/integration-steps):
//   const rzp = new Razorpay({key, amount, currency, order_id, name, description, handler, modal: {ondismiss}});
//   rzp.on("payment.failed", (response) => response.error.{code, description, source, step, reason, metadata});
//   rzp.open();
// handler(response) receives razorpay_payment_id, razorpay_order_id and razorpay_signature. A failed
// attempt fires "payment.failed" and leaves the checkout open for another try, as Razorpay's does.
function Razorpay(options) {
  if (!(this instanceof Razorpay)) return new Razorpay(options);
  if (!options || !options.key || !options.order_id) throw new Error("Razorpay: options.key and options.order_id are required");
  this._options = options;
  this._handlers = {};
  this._close = null;
}

Razorpay.prototype.on = function on(event, callback) {
  (this._handlers[event] = this._handlers[event] || []).push(callback);
  return this;
};

Razorpay.prototype.open = function open() {
  const options = this._options;
  const params = { order_id: options.order_id, key: options.key, name: options.name || "", description: options.description || "" };
  this._close = openSimCheckout("razorpay", params, (data, close) => {
    if (data.kind === "success") {
      close();
      if (typeof options.handler === "function") options.handler(data.response);
    } else if (data.kind === "failed") {
      for (const callback of this._handlers["payment.failed"] || []) callback(data.response);
    } else if (data.kind === "dismissed") {
      close();
      if (options.modal && typeof options.modal.ondismiss === "function") options.modal.ondismiss();
    }
  });
};

Razorpay.prototype.close = function closeCheckout() {
  if (this._close) this._close();
};

window.Razorpay = Razorpay;
