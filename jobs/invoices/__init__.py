"""The invoice showcase: daily invoices and weekly e-mails from orders kept in Ninox."""
