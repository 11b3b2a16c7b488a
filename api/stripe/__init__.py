"""The Stripe integration: everything that knows Stripe, in one place.

- ``gateway``: the ``stripe`` package's client, the PaymentIntents made for
  points bought, and the webhook signature check;
- ``webhooks``: the signed webhook route, which stores each event once in
  the inbox and answers (201 the first delivery, 200 a repeated one);
- ``inbox``: the ``stripe_events`` inbox, stored once per Stripe event id
  and processed by the worker (``module``: the job that does it);
- ``events``: what each Stripe event means to the domains, as calls of
  their use cases (``rewards.bought_points``,
  ``rewards.purchase_recording``, ``rewards.refunds``), all audited as
  ``system:stripe``;
- ``refunds``: the refund of the points payments refused after a program's
  end of earning, from their outbox event, once, audited.

Why here, and why one package: the domain packages import no payment
provider (an import-linter contract), so that a use case is the same
whatever door it is called through; what stays with them is what holds for
any provider (a payment covers the points it buys, a refund is resolved
against the payment recorded, cumulative refunds return only what is new).
What is Stripe's (its ids, its event types, its metadata, its cumulative
``amount_refunded``, its signatures, its SDK) sits in this one package, so a
change of Stripe's API, or a second provider beside it, touches nothing
else. It lives under ``api`` because it needs what the edge has and the
domains must not: the settings, the HTTP route and its problems, the
worker's producer. The gateway needs only the settings and
``rewards.bought_points``; a portal that sells points too can take it from
here when it comes.
"""
