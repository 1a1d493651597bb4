# Messages, approvals, campaigns, deliveries and tracking arrive with issues 4–6.
