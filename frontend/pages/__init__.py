"""The UI's pages (new job, jobs list, job) and the frame they share."""
