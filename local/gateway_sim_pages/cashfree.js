// Stand-in for Cashfree's JS SDK https://sdk.cashfree.com/js/v3/cashfree.js, with its calling shape
// (cashfree.com/docs/payments/online/web/redirect; Cashfree's own cashfree/cashfree-woocommerce
// assets/js/checkout.js):
//   const cashfree = Cashfree({mode: "sandbox" | "production"});
//   cashfree.checkout({paymentSessionId, redirectTarget: "_modal"}).then((result) => ...)
// The promise resolves with result.error (the shopper closed the checkout), or result.paymentDetails
// (a payment was completed: check its status on the server). Only the "_modal" target is simulated: the
// redirect targets need a return_url page, which the progress page does not use.
function Cashfree(config) {
  const mode = config && config.mode;
  if (mode !== "sandbox" && mode !== "production") throw new Error('Cashfree: mode must be "sandbox" or "production"');
  return {
    checkout(options) {
      return new Promise((resolve) => {
        if (!options || !options.paymentSessionId) {
          resolve({ error: { message: "paymentSessionId is required" } });
          return;
        }
        if (options.redirectTarget !== "_modal") {
          resolve({ error: { message: "the local simulator opens the checkout with redirectTarget \"_modal\" only" } });
          return;
        }
        openSimCheckout("cashfree", { payment_session_id: options.paymentSessionId }, (data, close) => {
          if (data.kind === "success") {
            close();
            resolve({ paymentDetails: { paymentMessage: data.message } });
          } else if (data.kind === "dismissed") {
            close();
            resolve({ error: { message: "The checkout was closed before a payment was completed." } });
          }
        });
      });
    },
  };
}

window.Cashfree = Cashfree;
